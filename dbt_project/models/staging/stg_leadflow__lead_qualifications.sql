with

source as (

    select * from {{ source('leadflow', 'lead_qualifications') }}

),

renamed as (

    select
        lead_id,
        broker_id,
        qualifier,
        schema_version,
        operation,
        property_type,
        bedrooms_min,
        budget_min,
        budget_max,
        budget_currency,
        budget_period,
        locations,
        timeline_months,
        financing,
        down_payment,
        monthly_income,
        dicom_status,
        arrears_amount,
        opted_out,
        commitment,
        commitment_at,
        commitment_when,
        hesitation,
        urgency_reason,
        asking_price,
        asking_currency,
        summary,
        qualified_at

    from source

)

select * from renamed
