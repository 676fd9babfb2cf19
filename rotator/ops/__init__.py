"""Operations around rotations: drift, metrics, audit, notifications, views, fleets, pruning."""
