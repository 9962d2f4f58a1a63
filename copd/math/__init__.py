"""copd/math"""
