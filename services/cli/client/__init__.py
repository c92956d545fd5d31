"""The CLI's client commands, on the SDK: login, agents, run, workflows, flags, usage."""
