#!/usr/bin/env python3
"""Smoke test of the secured broker (KAFKA_SECURITY=sasl_ssl scripts/kafka-broker start) from
librdkafka, the client library of the Rust crate.  Needs: pip install --user confluent-kafka

    eval "$(KAFKA_SECURITY=sasl_ssl scripts/kafka-broker start)"   # sets sasl_bootstrap, ca
    sasl_bootstrap=$sasl_bootstrap ca=$ca python3 scripts/broker/sasl-smoke.py
    python3 scripts/broker/sasl-smoke.py --bootstrap 127.0.0.1:9094 --ca target/kafka-data-sasl_ssl/tls/ca.pem

Checks (exit 0 when all behave as expected, 1 otherwise):
  - alice produces + consumes with SCRAM-SHA-256, SCRAM-SHA-512, PLAIN, OAUTHBEARER (unsecured JWT)
  - wrong password -> authentication error
  - trusting other-ca.pem (next to ca.pem) instead of ca.pem -> SSL handshake fails
  - bob with topic READ but no group READ -> group authorization error
  - bob with group READ but no topic READ -> topic authorization error
and prints the librdkafka error strings verbatim ("error: ...").  Bob's ACLs are added (as admin)
for a topic and a group unique to this run and removed again at the end, as are the topics.
Passwords: KAFKA_SASL_ADMIN_PASSWORD / _ALICE_ / _BOB_ (as for scripts/kafka-broker).
"""
import argparse
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, NewTopic, ResourcePatternType, ResourceType)

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--bootstrap", default=os.environ.get("sasl_bootstrap", "127.0.0.1:9094"))
ap.add_argument("--ca", default=os.environ.get("ca", os.path.join(
    os.path.dirname(__file__), "..", "..", "target", "kafka-data-sasl_ssl", "tls", "ca.pem")))
args = ap.parse_args()
CA = os.path.abspath(args.ca)
OTHER_CA = os.path.join(os.path.dirname(CA), "other-ca.pem")
PW = {u: os.environ.get(f"KAFKA_SASL_{u.upper()}_PASSWORD", f"{u}-secret") for u in ("admin", "alice", "bob")}
RUN = uuid.uuid4().hex[:8]
TOPIC = f"sasl-smoke-{RUN}"
TOPIC_NO_ACL = f"sasl-smoke-{RUN}-bob-no-acl"  # bob gets no ACL on this one
failures = []


def conf(user, mechanism="SCRAM-SHA-256", password=None, ca=CA, **extra):
    c = {"bootstrap.servers": args.bootstrap, "security.protocol": "SASL_SSL",
         "ssl.ca.location": ca, "sasl.mechanism": mechanism, "log_level": 0}
    if mechanism == "OAUTHBEARER":  # Kafka's unsecured validator: unsigned JWT, sub = user
        c.update({"enable.sasl.oauthbearer.unsecure.jwt": True, "sasl.oauthbearer.config": f"principal={user}"})
    else:
        c.update({"sasl.username": user, "sasl.password": PW[user] if password is None else password})
    c.update(extra)
    return c


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
    if not ok:
        failures.append(name)


def connect_error(c):
    """First error librdkafka reports (error_cb) while fetching metadata, or None if it works."""
    errors = []
    p = Producer({**c, "error_cb": lambda e: errors.append(e)})
    try:
        p.list_topics(timeout=10)
        return None
    except KafkaException as e:
        p.poll(1)  # serve error_cb: its errors say why ("SASL authentication error: ...", "SSL handshake failed: ...")
        return errors[0] if errors else e.args[0]


def consume(c, topic, group, want=None, secs=20):
    """Messages read from the beginning (stops after `want`), or the first consumer error."""
    errors, got = [], []
    cons = Consumer({**c, "group.id": group, "auto.offset.reset": "earliest",
                     "error_cb": lambda e: errors.append(e)})
    cons.subscribe([topic])
    deadline = time.time() + secs
    try:
        while time.time() < deadline and not errors and (want is None or len(got) < want):
            m = cons.poll(0.5)
            if m is None:
                continue
            if m.error():
                errors.append(m.error())
            else:
                got.append(m.value().decode())
    finally:
        cons.close()
    return got, errors[0] if errors else None


def produce(c, topic, values):
    p = Producer({**c, "enable.idempotence": True})
    errors = []
    for v in values:
        p.produce(topic, v.encode(), on_delivery=lambda e, m: e and errors.append(e))
    left = p.flush(20)
    return errors[0] if errors else (f"{left} messages not delivered" if left else None)


admin = AdminClient(conf("admin", "SCRAM-SHA-512"))
bob_acls = [
    AclBinding(ResourceType.TOPIC, TOPIC, ResourcePatternType.LITERAL, "User:bob", "*",
               AclOperation.READ, AclPermissionType.ALLOW),
    AclBinding(ResourceType.GROUP, f"bob-group-ok-{RUN}", ResourcePatternType.LITERAL, "User:bob", "*",
               AclOperation.READ, AclPermissionType.ALLOW),
]
try:
    # alice (ALL on topic '*') creates the topic herself.
    alice_admin = AdminClient(conf("alice"))  # (keep a reference until the futures are done)
    for f in alice_admin.create_topics([NewTopic(t, 1, 1) for t in (TOPIC, TOPIC_NO_ACL)]).values():
        f.result(15)
    sent = []
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "OAUTHBEARER"):
        v = f"{mech}-{RUN}"
        err = produce(conf("alice", mech), TOPIC, [v])
        sent.append(v)
        got, cerr = consume(conf("alice", mech), TOPIC, f"alice-{mech}-{RUN}", want=len(sent))
        check(f"alice {mech} produce+consume", err is None and cerr is None and got == sent,
              f"produce error {err}, consume error {cerr}, got {got}" if err or cerr or got != sent else "")

    err = connect_error(conf("alice", password="wrong-password"))
    check("wrong password refused", err is not None and "auth" in str(err).lower(), f"error: {err}")

    err = connect_error(conf("alice", ca=OTHER_CA))
    check("broker cert not signed by other-ca.pem refused", err is not None and "SSL" in str(err), f"error: {err}")

    for r in admin.create_acls(bob_acls).values():
        r.result(15)
    time.sleep(1)  # ACL propagation to the authorizer (same node, usually immediate)
    got, err = consume(conf("bob"), TOPIC, f"bob-group-denied-{RUN}")
    check("bob without group READ refused", err is not None and not got, f"error: {err}")
    got, err = consume(conf("bob"), TOPIC_NO_ACL, f"bob-group-ok-{RUN}")
    check("bob without topic READ refused", err is not None and not got, f"error: {err}")
finally:
    for f in admin.delete_acls([AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal,
                                                 b.host, b.operation, b.permission_type)
                                for b in bob_acls]).values():
        try:
            f.result(15)
        except KafkaException:
            pass
    for f in admin.delete_topics([TOPIC, TOPIC_NO_ACL]).values():
        try:
            f.result(15)
        except KafkaException:
            pass

print("all checks passed" if not failures else f"{len(failures)} check(s) failed: {', '.join(failures)}")
sys.exit(1 if failures else 0)
