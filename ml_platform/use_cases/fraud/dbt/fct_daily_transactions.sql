{{
  config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ delete_partition_range('tx_date') }}",
  )
}}

-- One row per day of the partition range present in the lake (validated or quarantined):
-- volume, amounts, fraud and the quarantined count. Days are replaced whole on re-runs.
with validated as (
    select
        tx_date,
        count(*)                     as n_transactions,
        sum(tx_amount)               as total_amount,
        avg(tx_amount)               as avg_amount,
        cast(sum(tx_fraud) as bigint) as n_fraud,
        count(distinct customer_id)  as n_customers,
        count(distinct terminal_id)  as n_terminals
    from {{ ref('stg_transactions') }}
    where tx_date between {{ partition_start() }} and {{ partition_end() }}
    group by tx_date
),

quarantined as (
    select cast("date" as date) as tx_date, count(*) as n_quarantined
    from {{ source('fraud_lake', 'quarantined_transactions') }}
    where "date" between {{ partition_start() }} and {{ partition_end() }}
    group by 1
),

days as (
    select tx_date from validated
    union
    select tx_date from quarantined
)

select
    d.tx_date,
    coalesce(v.n_transactions, 0)                              as n_transactions,
    coalesce(v.total_amount, 0.0)                              as total_amount,
    v.avg_amount                                               as avg_amount,
    coalesce(v.n_fraud, 0)                                     as n_fraud,
    coalesce(v.n_fraud, 0) / nullif(v.n_transactions, 0)       as fraud_rate,
    coalesce(v.n_customers, 0)                                 as n_customers,
    coalesce(v.n_terminals, 0)                                 as n_terminals,
    coalesce(q.n_quarantined, 0)                               as n_quarantined,
    coalesce(q.n_quarantined, 0)
        / nullif(coalesce(v.n_transactions, 0) + coalesce(q.n_quarantined, 0), 0)
                                                               as quarantined_share
from days as d
left join validated as v using (tx_date)
left join quarantined as q using (tx_date)
