-- Every stage a lead visited is a stage of its broker's pipeline: otherwise the funnel would drop it.

select visits.stage_visit_id, visits.broker_id, visits.stage
from {{ ref('int_stage_visits') }} as visits
left join {{ ref('int_broker_stages') }} as stages using (broker_id, stage)
where stages.stage is null
