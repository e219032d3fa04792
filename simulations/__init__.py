"""Simulation studies and benchmarks for hcl_stats (not library code).

Run ``python -m simulations --help`` for the commands.
"""
