"""Simulated Windows hosts: a loopback WS-Management server that the real pywinrm talks to."""
