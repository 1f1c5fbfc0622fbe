"""Measurement: costs (parameters, multiply-adds), latency, profiles and the Pareto optimizer."""
