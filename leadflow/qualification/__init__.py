"""Lead qualification: the schema, the offline rules qualifier, and scoring. Pure, no I/O."""
