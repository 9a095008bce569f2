"""Operations: what the gateway tells its operator (metrics, stats rows), as pure state."""
