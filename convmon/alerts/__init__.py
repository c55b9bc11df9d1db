"""Alert delivery: reads the alerts outbox, routes, groups, silences and delivers
notifications exactly once per due notification (Alertmanager's semantics).

Modules: `config` (the ``alerts`` section), `matchers`, `routing` (route tree, group keys),
`silences`, `inhibit`, `store` (groups, notification log, due queue in Redis),
`dispatcher` (the component), `notification` (what receivers get, escaping, links),
`receivers` (Slack, email, webhook, Alertmanager, heartbeat, discard, console),
`api` (HTTP), `cli`, `metrics`, `plugin` (wiring).

Example configuration::

    alerts:
      receivers:
        - {type: slack, name: slack, webhook_url: env:SLACK_WEBHOOK_URL}
        - type: email
          name: oncall
          host: smtp.example.org
          port: 587
          security: starttls
          username: convmon
          password: file:/run/secrets/smtp_password
          from: convmon@example.org
          to: [oncall@example.org]
        - {type: webhook, name: hook, url: env:HOOK_URL, hmac_secret: env:HOOK_SECRET}
        - {type: alertmanager, name: am, urls: [http://alertmanager:9093]}
        - {type: heartbeat, name: deadman, url: env:DEADMAN_PING_URL}
      route:
        receiver: slack
        group_by: [alertname]
        group_wait_s: 30
        group_interval_s: 300
        repeat_interval_s: 14400
        send_missed_resolved: true   # the default: see deploy/README.md
        routes:
          - {receiver: deadman, matchers: ['alertname="Watchdog"'], group_wait_s: 0,
             repeat_interval_s: 60}
          - {receiver: oncall, matchers: ["severity=critical"], continue: true}
          - {receiver: am, matchers: ['alertname=~"Pool.*"']}
      inhibit_rules:
        - source_matchers: [severity=critical]
          target_matchers: [severity=warning]
          equal: [pool]
      retry: {initial_backoff_s: 1, max_backoff_s: 300, give_up_after_s: 21600}
"""
