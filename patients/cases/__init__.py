"""Cases: the `Case` record, generation (samplers, the posterior) and realisation."""
