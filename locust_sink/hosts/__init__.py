"""Host metrics of the system under test (docs/hosts.md), one job per module:

- ecs.py     the ECS field names both Metricbeat and `locust-sink agent` write, the agent's index template
- sampler.py `HostSampler`: one ECS document per interval from psutil (CPU, memory, disk and network deltas)
- agent.py   `locust-sink agent`: the sampling loop, a bounded buffer, delivery to Elasticsearch or NDJSON files

No Locust and no gevent here: the agent runs on the system under test's host, from the `locust-sink` CLI.
"""
