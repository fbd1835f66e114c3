{{
  config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ delete_partition_range('tx_date') }}",
  )
}}

-- Validated transactions of the partition range, typed to the contract. `tx_date` is the
-- lake partition (hive folder) the row came from; the filter prunes the files read.
select
    cast(transaction_id as bigint)   as transaction_id,
    cast(tx_datetime as timestamp)   as tx_datetime,
    cast("date" as date)             as tx_date,
    cast(customer_id as bigint)      as customer_id,
    cast(terminal_id as bigint)      as terminal_id,
    cast(tx_amount as double)        as tx_amount,
    cast(tx_fraud as integer)        as tx_fraud
from {{ source('lake', 'validated_transactions') }}
where "date" between {{ partition_start() }} and {{ partition_end() }}
