"""copd/common"""
