"""The HTTP service: webhooks, the agent function, the monitoring API and the dashboard."""
