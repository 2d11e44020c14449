-- One row per appointment booked by as_of, with the flags the appointment funnel counts: set (a visit
-- agreed, rescheduled ones counted once: by the appointment they moved to), came due (started, not
-- cancelled), held (completed), no-show, cancelled; the lead's channel and the agent.

with

appointments as (

    select * from {{ ref('int_appointments_as_of') }}

),

brokers as (

    select * from {{ ref('stg_leadflow__brokers') }}

),

final as (

    select
        appointments.appointment_id,
        appointments.broker_id,
        appointments.lead_id,
        appointments.agent_id,
        appointments.lead_channel,
        appointments.appointment_kind,
        appointments.booked_via,
        appointments.status,
        appointments.booked_at,
        appointments.starts_at,
        -- periods in the broker's timezone, by the visit's day: the week starting Monday, the month
        date_trunc('week', appointments.starts_at at time zone brokers.timezone)::date as visit_week,
        date_trunc('month', appointments.starts_at at time zone brokers.timezone)::date as visit_month,
        appointments.status <> 'rescheduled' as is_set,
        appointments.has_started and appointments.status not in ('cancelled', 'rescheduled') as is_due,
        appointments.status = 'completed' as is_held,
        appointments.status = 'no_show' as is_no_show,
        appointments.status = 'cancelled' as is_cancelled,
        -- came due and nobody has said yet whether it happened
        appointments.has_started and appointments.status in ('proposed', 'confirmed') as is_unmarked

    from appointments
    inner join brokers using (broker_id)

)

select * from final
