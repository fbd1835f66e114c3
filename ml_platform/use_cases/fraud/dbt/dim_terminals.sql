-- One row per terminal seen in the warehouse; rebuilt whole from staging on every run.
select
    terminal_id,
    min(tx_datetime)                 as first_tx_at,
    max(tx_datetime)                 as last_tx_at,
    count(*)                         as n_transactions,
    sum(tx_amount)                   as total_amount,
    avg(tx_amount)                   as avg_amount,
    cast(sum(tx_fraud) as bigint)  as n_fraud,
    count(distinct customer_id)      as n_customers
from {{ ref('stg_transactions') }}
group by terminal_id
