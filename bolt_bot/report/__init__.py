"""Reporting: `Results` rendered through jinja2 templates, text from the project made inert, the comment's hidden state, the results directory."""
