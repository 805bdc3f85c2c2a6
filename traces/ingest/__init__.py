"""Parsing of ingestion payloads (OTLP traces, the plain JSON format) into IngestRecords."""
