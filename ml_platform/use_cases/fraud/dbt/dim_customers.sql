-- One row per customer seen in the warehouse; rebuilt whole from staging on every run.
select
    customer_id,
    min(tx_datetime)                 as first_tx_at,
    max(tx_datetime)                 as last_tx_at,
    count(*)                         as n_transactions,
    count(distinct tx_date)          as n_active_days,
    sum(tx_amount)                   as total_amount,
    avg(tx_amount)                   as avg_amount,
    cast(sum(tx_fraud) as bigint)  as n_fraud,
    count(distinct terminal_id)      as n_terminals
from {{ ref('stg_transactions') }}
group by customer_id
