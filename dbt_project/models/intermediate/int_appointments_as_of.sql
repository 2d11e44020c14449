-- Each appointment booked by the as_of instant, with its status then: the last status change at or
-- before as_of (a visit marked held tomorrow is still confirmed today), whether it had come due
-- (started by as_of) and the channel its lead talked on (the visit's own, else the lead's first).

with

appointments as (

    select * from {{ ref('stg_leadflow__appointments') }}

),

events as (

    select * from {{ ref('stg_leadflow__appointment_events') }}

),

leads as (

    select * from {{ ref('int_leads_sourced') }}

),

status_as_of as (

    select distinct on (appointment_id)
        appointment_id,
        to_status as status

    from events
    where changed_at <= {{ as_of() }}
    order by appointment_id, changed_at desc, appointment_event_id desc

),

final as (

    select
        appointments.appointment_id,
        appointments.broker_id,
        appointments.lead_id,
        appointments.agent_id,
        appointments.appointment_kind,
        appointments.booked_via,
        coalesce(appointments.lead_channel, leads.first_channel, 'unknown') as lead_channel,
        appointments.booked_at,
        appointments.starts_at,
        appointments.booked_timezone,
        coalesce(status_as_of.status, appointments.appointment_status) as status,
        appointments.starts_at <= {{ as_of() }} as has_started

    from appointments
    left join status_as_of using (appointment_id)
    left join leads using (lead_id)
    where appointments.booked_at <= {{ as_of() }}

)

select * from final
