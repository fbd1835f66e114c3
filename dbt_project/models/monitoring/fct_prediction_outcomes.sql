{{
  config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ delete_partition_range('tx_date') }}",
  )
}}
-- Lineage (rendered at parse time, whatever the lake holds):
-- depends_on: {{ source('monitoring', 'batch_predictions') }}
-- depends_on: {{ source('monitoring', 'online_predictions') }}

-- One row per prediction (batch or online) of the partition range joined with the
-- transaction's label. `label_available_on` is when the label matures (label delay after
-- the transaction): performance is only measured on rows whose label is available.
{%- set present = [] -%}
{%- if execute -%}
  {%- for name in ['batch_predictions', 'online_predictions'] -%}
    {%- set pattern = env_var('ML_PLATFORM_LAKE_DIR') ~ '/' ~ name ~ '/*/*.parquet' -%}
    {%- set found = run_query("select count(*) from glob('" ~ pattern ~ "')") -%}
    {%- if found.columns[0].values()[0] > 0 -%}{%- do present.append(name) -%}{%- endif -%}
  {%- endfor -%}
{%- endif %}

with predictions as (
{%- for name in present %}
    select
        cast("date" as date)             as tx_date,
        cast(transaction_id as bigint)   as transaction_id,
        '{{ "batch" if name == "batch_predictions" else "online" }}' as source,
        cast(model_name as varchar)      as model_name,
        cast(model_version as varchar)   as model_version,
        cast(score as double)            as score,
        cast(is_fraud as boolean)        as is_fraud,
        cast(threshold as double)        as threshold
    from {{ source('monitoring', name) }}
    where "date" between {{ partition_start() }} and {{ partition_end() }}
    {%- if not loop.last %}
    union all
    {%- endif %}
{%- endfor %}
{%- if not present %}
    select
        cast(null as date) as tx_date, cast(null as bigint) as transaction_id,
        cast(null as varchar) as source, cast(null as varchar) as model_name,
        cast(null as varchar) as model_version, cast(null as double) as score,
        cast(null as boolean) as is_fraud, cast(null as double) as threshold
    where false
{%- endif %}
)

select
    p.tx_date,
    p.transaction_id,
    p.source,
    p.model_name,
    p.model_version,
    t.customer_id,
    t.terminal_id,
    t.tx_amount,
    p.score,
    p.is_fraud,
    p.threshold,
    t.tx_fraud,
    p.tx_date + cast({{ env_var('ML_PLATFORM_LABEL_DELAY_DAYS', '7') }} as integer) + 1
                                         as label_available_on
from predictions as p
join {{ ref('stg_transactions') }} as t
    on t.transaction_id = p.transaction_id
   and t.tx_date = p.tx_date
