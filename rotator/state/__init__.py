"""State stores: where runs and leases are checkpointed (file journal, DynamoDB)."""
