"""Helpers and config texts shared by the config tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

WriteConfig = Callable[[str], Path]
"""The ``write_config`` fixture: writes config.yaml into a fresh truss dir and returns the dir."""

EVERY_KEY = """\
model_name: everything
description: A model that sets every key
model_metadata:
  example_model_input: {prompt: hi}
  tags: [openai-compatible]
examples_filename: my_examples.yaml
python_version: py311
requirements:
  - numpy==2.0
  - torch
system_packages: [ffmpeg]
environment_variables:
  MODE: fast
secrets:
  hf_access_token: null
  api_key: placeholder
data_dir: my_data
bundled_packages_dir: my_packages
external_package_dirs: [../shared]
external_data:
  - url: https://example.com/w.bin
    local_data_path: weights/w.bin
    name: w
model_module_dir: src
model_class_filename: main.py
model_class_name: Predictor
base_image:
  image: nvcr.io/nvidia/pytorch:24.01-py3
  python_executable_path: /usr/bin/python3
  docker_auth:
    auth_method: gcp_service_account_json
    secret_name: gcp_key
    registry: nvcr.io
build_commands:
  - echo hello
build:
  model_server: TrussServer
  arguments: {engine: fast}
  secret_to_path_mapping:
    hf_access_token: /root/.hf_token
resources:
  cpu: 500m
  memory: 512Mi
  accelerator: A10G:2
  instance_type: A10G:2x8
  node_count: 2
  fabric:
    use_rdma: true
    preferences: [nvlink]
runtime:
  predict_concurrency: 8
  streaming_read_timeout: 120
  enable_tracing_data: true
  enable_debug_logs: true
  transport:
    kind: websocket
    ping_interval_seconds: 10
    ping_timeout_seconds: 20.5
  health_checks:
    restart_check_delay_seconds: 5
    restart_threshold_seconds: 60
    stop_traffic_threshold_seconds: 30
    startup_threshold_seconds: 600
  oidc:
    enabled: true
  remote_ssh:
    enabled: true
  egress_restrictions:
    ip_allow_list: [10.0.0.0/8, 1.2.3.4]
    fqdn_allow_list: ["*.example.com", api.openai.com]
  truss_server_version_override: 0.9.100
  max_queue_size: 16
  request_timeout_seconds: 2.5
  drain_timeout_seconds: 10
  max_request_body_bytes: 1024
weights:
  - source: hf://meta-llama/Llama-3@main
    mount_location: /models/llama
    auth_secret_name: hf_access_token
    allow_patterns: ["*.safetensors"]
    ignore_patterns: ["*.md"]
  - source: s3://bucket/path
    mount_location: /models/s3
    auth:
      auth_method: AWS_OIDC
      aws_oidc_role_arn: arn:aws:iam::1:role/r
      aws_oidc_region: us-east-1
trt_llm:
  build:
    base_model: llama
    max_seq_len: 4096
bis_llm:
  config: {max_tokens: 100}
  version: 1
  additional_autoscaling_config:
    metrics:
      - {name: tokens_per_second, target: 100}
training_checkpoints:
  download_folder: /tmp/ckpt
  artifact_references:
    - training_job_id: job1
      paths: ["ckpt-*"]
  loops_checkpoint_ids: [tcp_a]
live_reload: true
apply_library_patches: false
use_local_src: true
input_type: Any
model_framework: custom
model_type: Model
spec_version: 2.0
"""
