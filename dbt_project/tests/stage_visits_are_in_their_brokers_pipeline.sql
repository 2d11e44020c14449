-- Every stage a lead visited is a stage of its broker's pipeline: otherwise the funnel would drop it.
-- Checks the visits the latest build wrote (all of them after a full refresh): the rest were checked
-- when they were written.

select visits.stage_visit_id, visits.broker_id, visits.stage
from {{ ref('int_stage_visits') }} as visits
left join {{ ref('int_broker_stages') }} as stages using (broker_id, stage)
where stages.stage is null
  and visits.built_at >= (select max(built_at) from {{ ref('int_stage_visits') }})
