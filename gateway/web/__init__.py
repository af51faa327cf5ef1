"""HTTP handlers: thin translations between HTTP and the services in gateway/."""
