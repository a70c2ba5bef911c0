"""The delivery engine: from the request buffer to Elasticsearch or NDJSON files, losing nothing.

Data flows one way (docs/DESIGN.md, "Modules"):

    buffer.RecordBuffer --take_flat--> loop.DeliveryLoop --> batches.BatchAssembler --> encoding.BatchEncoder
        --> writer.Writer: elastic.EsDelivery (link.EsLink, retry.RetryPolicy) | writer.FileDelivery
    what cannot go: spool.Fallback (spool or drop); spooled segments come back through spool.Replayer

`engine.Delivery` puts the pieces together for one Locust process. This module imports nothing, so that the
encoder helper process (`delivery.helper`) loads neither gevent nor Locust.
"""
