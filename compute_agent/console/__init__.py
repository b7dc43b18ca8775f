"""Browser consoles: console tokens kept in the database (tokens), the
connection to a VM's console on dom0 (dom0_console) and the websocket
proxy that serves noVNC and relays RFB (proxy)."""
