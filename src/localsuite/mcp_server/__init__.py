"""The MCP server: the suite's tools for MCP clients, over streamable HTTP and stdio."""
