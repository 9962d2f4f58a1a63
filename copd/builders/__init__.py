"""copd/builders"""
