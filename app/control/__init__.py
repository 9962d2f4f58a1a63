"""app/control"""
