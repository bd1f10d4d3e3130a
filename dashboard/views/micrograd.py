import streamlit as st

# PLACEHOLDER written by the lead so the router loads; helper-2 replaces this file entirely.
st.title("micrograd")
st.info("Coming soon.")
