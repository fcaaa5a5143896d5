#pragma once
// Precompiled header shared by the library, tests, examples and benchmarks: the heavy LibTorch
// headers that nearly every translation unit pulls in. Never included by public headers.
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>
