"""The web app: HTTP server, JSON API, Gradio chat, widget and source pages, feedback, rate limits."""
