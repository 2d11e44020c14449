-- The appointment funnel per broker, period (week starting Monday, or month; in the broker's timezone),
-- agent and lead channel, with 'all' rows for every roll-up of agent and channel:
--   set rate: of the leads whose first contact fell in the period, those that got an appointment (cut by the
--             lead's first channel and the agent it is assigned to);
--   held and no-show rates: of the visits of the period that came due (started by as_of, not cancelled),
--             those completed and those the lead missed (cut by the visit's channel and its agent).
-- agent is a user id as text, 'none' (the broker's own calendar, or an unassigned lead) or 'all'.

with

leads as (

    select * from {{ ref('int_leads_sourced') }}

),

lead_agents as (

    select lead_id, assigned_user_id from {{ ref('stg_leadflow__leads') }}

),

brokers as (

    select * from {{ ref('stg_leadflow__brokers') }}

),

appointments as (

    select * from {{ ref('fct_appointments') }}

),

periods as (

    select period from (values ('week'), ('month')) as periods (period)

),

-- each row is counted in its own cell and in the roll-ups over agent, channel and both
cuts as (

    select * from (values (false, false), (true, false), (false, true), (true, true)) as cuts (all_agents, all_channels)

),

leads_booked as (

    select distinct lead_id from appointments

),

lead_rows as (

    select
        leads.broker_id,
        periods.period,
        date_trunc(periods.period, leads.first_contact_at at time zone brokers.timezone)::date as period_start,
        coalesce(lead_agents.assigned_user_id::text, 'none') as agent,
        leads.first_channel as channel,
        leads_booked.lead_id is not null as has_appointment

    from leads
    inner join brokers using (broker_id)
    inner join lead_agents using (lead_id)
    left join leads_booked using (lead_id)
    cross join periods
    where not leads.is_merged
      and leads.first_contact_at <= {{ as_of() }}

),

appointment_rows as (

    select
        appointments.broker_id,
        periods.period,
        case when periods.period = 'week' then appointments.visit_week else appointments.visit_month end
            as period_start,
        coalesce(appointments.agent_id::text, 'none') as agent,
        appointments.lead_channel as channel,
        appointments.is_due,
        appointments.is_held,
        appointments.is_no_show,
        appointments.is_cancelled,
        appointments.is_unmarked

    from appointments
    cross join periods
    where appointments.is_set

),

lead_counts as (

    select
        broker_id,
        period,
        period_start,
        case when cuts.all_agents then 'all' else agent end as agent,
        case when cuts.all_channels then 'all' else channel end as channel,
        count(*) as leads,
        count(*) filter (where has_appointment) as leads_with_appointment

    from lead_rows
    cross join cuts
    group by 1, 2, 3, 4, 5

),

appointment_counts as (

    select
        broker_id,
        period,
        period_start,
        case when cuts.all_agents then 'all' else agent end as agent,
        case when cuts.all_channels then 'all' else channel end as channel,
        count(*) as appointments_set,
        count(*) filter (where is_due) as appointments_due,
        count(*) filter (where is_held) as appointments_held,
        count(*) filter (where is_no_show) as appointments_no_show,
        count(*) filter (where is_cancelled) as appointments_cancelled,
        count(*) filter (where is_unmarked) as appointments_unmarked

    from appointment_rows
    cross join cuts
    group by 1, 2, 3, 4, 5

),

final as (

    select
        broker_id,
        period,
        period_start,
        agent,
        channel,
        coalesce(lead_counts.leads, 0) as leads,
        coalesce(lead_counts.leads_with_appointment, 0) as leads_with_appointment,
        coalesce(appointment_counts.appointments_set, 0) as appointments_set,
        coalesce(appointment_counts.appointments_due, 0) as appointments_due,
        coalesce(appointment_counts.appointments_held, 0) as appointments_held,
        coalesce(appointment_counts.appointments_no_show, 0) as appointments_no_show,
        coalesce(appointment_counts.appointments_cancelled, 0) as appointments_cancelled,
        coalesce(appointment_counts.appointments_unmarked, 0) as appointments_unmarked,
        lead_counts.leads_with_appointment::numeric / nullif(lead_counts.leads, 0) as appointment_set_rate,
        appointment_counts.appointments_held::numeric / nullif(appointment_counts.appointments_due, 0) as held_rate,
        appointment_counts.appointments_no_show::numeric / nullif(appointment_counts.appointments_due, 0)
            as no_show_rate

    from lead_counts
    full outer join appointment_counts using (broker_id, period, period_start, agent, channel)

)

select * from final
