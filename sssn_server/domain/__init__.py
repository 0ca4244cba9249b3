"""Domain layer: models, validation rules, errors and the channel service (no gRPC here)."""
