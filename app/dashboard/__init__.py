"""The dashboard: read models over the store (`queries`, `series`, the *_data modules),
every Plotly figure builder (`figures/`), and the Streamlit page bodies (*_view, widgets,
forms). pages/ only calls into here. No module loads torch on import."""
