{#- The partition range a run rebuilds, from env vars set by the Dagster asset.
    Unset (e.g. a manual `dbt build`), the range covers every day in the lake. -#}
{% macro partition_start() -%}
  cast('{{ env_var("ML_PLATFORM_DBT_PARTITION_START", "1900-01-01") }}' as date)
{%- endmacro %}

{% macro partition_end() -%}
  cast('{{ env_var("ML_PLATFORM_DBT_PARTITION_END", "2999-12-31") }}' as date)
{%- endmacro %}

{#- Pre-hook of incremental models: drop the rows of the range about to be re-inserted, so a
    re-run replaces its partitions whole (idempotent, no duplicates, no stale rows). -#}
{% macro delete_partition_range(column) -%}
  {%- if is_incremental() -%}
    delete from {{ this }} where {{ column }} between {{ partition_start() }} and {{ partition_end() }}
  {%- endif -%}
{%- endmacro %}
