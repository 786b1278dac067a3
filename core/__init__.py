"""The Vivified core broker: CA, registry, interceptor chain, policy and audit."""
