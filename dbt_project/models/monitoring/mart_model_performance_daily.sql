-- Labeled performance per day, model version and prediction source, on matured labels only
-- (as of the newest day in the warehouse). Counts, catch rate and ROC AUC (rank-sum formula,
-- ties averaged) are computed here; average precision and card precision@100 are added by
-- the Dagster asset `model_performance` (ml_platform/monitoring/performance.py).
with as_of as (
    select max(tx_date) as as_of_date from {{ ref('stg_transactions') }}
),

matured as (
    select o.*
    from {{ ref('fct_prediction_outcomes') }} as o, as_of
    where o.label_available_on <= as_of.as_of_date
),

ranked as (
    select
        *,
        rank() over (partition by tx_date, model_version, source order by score)
          + (count(*) over (partition by tx_date, model_version, source, score) - 1) / 2.0
          as score_rank
    from matured
)

select
    tx_date,
    model_version,
    source,
    count(*)                                                        as n_transactions,
    cast(sum(tx_fraud) as bigint)                                   as n_fraud,
    cast(sum(case when is_fraud then 1 else 0 end) as bigint)       as n_flagged,
    cast(sum(case when is_fraud and tx_fraud = 1 then 1 else 0 end) as bigint) as n_caught,
    sum(case when is_fraud and tx_fraud = 1 then 1 else 0 end)
        / nullif(sum(tx_fraud), 0)                                  as fraud_catch_rate,
    sum(case when is_fraud and tx_fraud = 1 then 1 else 0 end)
        / nullif(sum(case when is_fraud then 1 else 0 end), 0)      as flagged_precision,
    avg(score)                                                      as mean_score,
    (sum(case when tx_fraud = 1 then score_rank else 0 end)
        - sum(tx_fraud) * (sum(tx_fraud) + 1) / 2.0)
        / nullif(sum(tx_fraud) * (count(*) - sum(tx_fraud)), 0)     as roc_auc,
    min(label_available_on)                                         as label_available_on
from ranked
group by tx_date, model_version, source
