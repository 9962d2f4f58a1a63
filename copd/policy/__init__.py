"""copd/policy"""
