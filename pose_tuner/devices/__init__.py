"""Devices: what runs on, or stands for, the machines a remote target measures on.

* :mod:`~pose_tuner.devices.device_server` – pose-tuner's RPC device server (TVM's RPC
  server plus ONNX Runtime for baselines), a standalone script copied to each device;
* :mod:`~pose_tuner.devices.emulator` – an emulated Raspberry Pi (qemu-user) on this host;
* :mod:`~pose_tuner.devices.probe` – a tiny module built here and run on a pool's device;
* :mod:`~pose_tuner.devices.availability` – whether this machine can measure on a target
  now (its own facts, then its pool or its accelerator), before a search does any work.
"""
