"""RPC: transport and targets, the agent's server endpoint, the versioned
client API (ComputeAPI), the serializer and the structured errors."""
