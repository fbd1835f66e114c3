{#- The models every use case gets, as macros called by the small model files generated from
    its declaration (ml_platform/defs/warehouse/generate.py writes them under
    models/use_cases/<name>/). Every column name comes in as an argument: nothing here names
    a column of any use case. -#}

{#- True when the lake table has at least one Parquet file. Parsing (no database) always
    renders the reading branch, so the source's lineage is recorded whatever the lake holds. -#}
{% macro lake_table_present(table) -%}
  {%- if not execute -%}{{ return(true) }}{%- endif -%}
  {%- set pattern = env_var('ML_PLATFORM_LAKE_DIR') ~ '/' ~ table ~ '/*/*.parquet' -%}
  {%- set found = run_query("select count(*) from glob('" ~ pattern ~ "')") -%}
  {{ return(found.columns[0].values()[0] > 0) }}
{%- endmacro %}

{#- `select <typed nulls> where false`: the empty result of a model whose input is absent. -#}
{% macro empty_select(columns) -%}
select
{%- for name, type in columns %}
    cast(null as {{ type }}) as {{ adapter.quote(name) }}{{ "," if not loop.last }}
{%- endfor %}
where false
{%- endmacro %}

{#- Staging: the validated events of the partition range typed to the declaration.
    `columns`: [name, SQL type] pairs, the event id and event time first; `day` is the
    lake partition (hive folder) the row came from, placed after them. -#}
{% macro staging_model(source_name, table, columns, day) -%}
{%- set relation = source(source_name, table) -%}
{%- set typed = columns[:2] + [[day, 'date']] + columns[2:] -%}
{%- if lake_table_present(table) %}
select
{%- for name, type in typed %}
    {%- if name == day %}
    cast("date" as date) as {{ day }}
    {%- else %}
    cast({{ adapter.quote(name) }} as {{ type }}) as {{ adapter.quote(name) }}
    {%- endif %}{{ "," if not loop.last }}
{%- endfor %}
from {{ relation }}
where "date" between {{ partition_start() }} and {{ partition_end() }}
{%- else %}
{{ empty_select(typed) }}
{%- endif %}
{%- endmacro %}

{#- Prediction outcomes: every batch and online prediction of the partition range joined with
    its event's label, with the day the label is available (`label_available_on`): the day
    after the event plus a fixed delay (`delay_days`), or the day after each row's own
    availability time (`known_at`, a column of the staging model). -#}
{% macro prediction_outcomes_model(
    staging, monitoring_source, tables, event_id, id_type, carried, decision, label,
    day, delay_days=none, known_at=none
) -%}
{%- set prediction_columns = [
    [day, 'date'], [event_id, id_type], ['source', 'varchar'], ['model_name', 'varchar'],
    ['model_version', 'varchar'], ['score', 'double'], [decision, 'boolean'],
    ['threshold', 'double']
] -%}
{%- set present = [] -%}
{%- for table, kind in tables -%}
  {%- set relation = source(monitoring_source, table) -%}
  {%- if lake_table_present(table) -%}{%- do present.append([relation, kind]) -%}{%- endif -%}
{%- endfor %}
with predictions as (
{%- for relation, kind in present %}
    select
        cast("date" as date)                       as {{ day }},
        cast({{ adapter.quote(event_id) }} as {{ id_type }}) as {{ adapter.quote(event_id) }},
        '{{ kind }}'                               as source,
        cast(model_name as varchar)                as model_name,
        cast(model_version as varchar)             as model_version,
        cast(score as double)                      as score,
        cast({{ adapter.quote(decision) }} as boolean) as {{ adapter.quote(decision) }},
        cast(threshold as double)                  as threshold
    from {{ relation }}
    where "date" between {{ partition_start() }} and {{ partition_end() }}
    {%- if not loop.last %}
    union all
    {%- endif %}
{%- endfor %}
{%- if not present %}
    {{ empty_select(prediction_columns) }}
{%- endif %}
)

select
    p.{{ day }},
    p.{{ adapter.quote(event_id) }},
    p.source,
    p.model_name,
    p.model_version,
{%- for name in carried %}
    t.{{ adapter.quote(name) }},
{%- endfor %}
    p.score,
    p.{{ adapter.quote(decision) }},
    p.threshold,
    t.{{ adapter.quote(label) }},
{%- if known_at is not none %}
    cast(t.{{ adapter.quote(known_at) }} as date) + 1 as label_available_on
{%- else %}
    p.{{ day }} + cast({{ delay_days }} as integer) + 1 as label_available_on
{%- endif %}
from predictions as p
join {{ ref(staging) }} as t
    on t.{{ adapter.quote(event_id) }} = p.{{ adapter.quote(event_id) }}
   and t.{{ day }} = p.{{ day }}
{%- endmacro %}

{#- Labelled performance per day, model version and prediction source, on matured labels only
    (as of the newest day in the staging model). Binary: counts, catch rate, precision of the
    flagged events and ROC AUC (rank-sum formula, ties averaged). Regression: MAE, RMSE, R²,
    the mean prediction and label, and the flag's precision and recall (flag: prediction >
    `flag_above`; truth: label > `flag_above`). -#}
{% macro performance_daily_model(outcomes, staging, task, label, decision, day, flag_above=none) -%}
{%- set y = adapter.quote(label) -%}
{%- set flagged = adapter.quote(decision) -%}
with as_of as (
    select max({{ day }}) as as_of_date from {{ ref(staging) }}
),

matured as (
    select o.*
    from {{ ref(outcomes) }} as o, as_of
    where o.label_available_on <= as_of.as_of_date
)
{%- if task == 'binary' %},

ranked as (
    select
        *,
        rank() over (partition by {{ day }}, model_version, source order by score)
          + (count(*) over (partition by {{ day }}, model_version, source, score) - 1) / 2.0
          as score_rank
    from matured
)

select
    {{ day }},
    model_version,
    source,
    count(*)                                                        as n_transactions,
    cast(sum({{ y }}) as bigint)                                    as n_fraud,
    cast(sum(case when {{ flagged }} then 1 else 0 end) as bigint)  as n_flagged,
    cast(sum(case when {{ flagged }} and {{ y }} = 1 then 1 else 0 end) as bigint) as n_caught,
    sum(case when {{ flagged }} and {{ y }} = 1 then 1 else 0 end)
        / nullif(sum({{ y }}), 0)                                   as fraud_catch_rate,
    sum(case when {{ flagged }} and {{ y }} = 1 then 1 else 0 end)
        / nullif(sum(case when {{ flagged }} then 1 else 0 end), 0) as flagged_precision,
    avg(score)                                                      as mean_score,
    (sum(case when {{ y }} = 1 then score_rank else 0 end)
        - sum({{ y }}) * (sum({{ y }}) + 1) / 2.0)
        / nullif(sum({{ y }}) * (count(*) - sum({{ y }})), 0)       as roc_auc,
    min(label_available_on)                                         as label_available_on
from ranked
group by {{ day }}, model_version, source
{%- else %}

select
    {{ day }},
    model_version,
    source,
    count(*)                                                        as n_predictions,
    avg(abs({{ y }} - score))                                       as mean_absolute_error,
    sqrt(avg(({{ y }} - score) * ({{ y }} - score)))                as root_mean_squared_error,
    1 - sum(({{ y }} - score) * ({{ y }} - score))
        / nullif(var_pop({{ y }}) * count(*), 0)                    as r2,
    avg(score)                                                      as mean_prediction,
    avg({{ y }})                                                    as mean_label,
    cast(sum(case when {{ flagged }} then 1 else 0 end) as bigint)  as n_flagged,
{%- if flag_above is not none %}
    cast(sum(case when {{ y }} > {{ flag_above }} then 1 else 0 end) as bigint) as n_flag_true,
    sum(case when {{ flagged }} and {{ y }} > {{ flag_above }} then 1 else 0 end)
        / nullif(sum(case when {{ flagged }} then 1 else 0 end), 0) as flag_precision,
    sum(case when {{ flagged }} and {{ y }} > {{ flag_above }} then 1 else 0 end)
        / nullif(sum(case when {{ y }} > {{ flag_above }} then 1 else 0 end), 0) as flag_recall,
{%- endif %}
    min(label_available_on)                                         as label_available_on
from matured
group by {{ day }}, model_version, source
{%- endif %}
{%- endmacro %}
