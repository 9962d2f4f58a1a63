"""copd/tools"""
