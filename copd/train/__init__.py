"""copd/train"""
