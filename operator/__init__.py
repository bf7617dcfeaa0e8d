"""The operator: owns the cluster's shape (pods, gateways) on a platform --
Kubernetes or local processes -- and talks to the store through its public APIs."""
