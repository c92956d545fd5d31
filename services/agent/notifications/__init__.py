"""Notification channels of tenants: email (SMTP), Slack, signed webhooks and SMS.

:mod:`.channels` checks a channel and splits it into settings and sealed secrets;
:mod:`.senders` delivers one notification over one kind of channel; :mod:`.outbox`
records each notification with its delivery (a transactional outbox in the agent
database) and retries failed attempts with exponential backoff from a relay, so a
delivery survives a restart; :mod:`.handlers` serves the RPCs.
"""
