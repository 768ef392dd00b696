// ttt-bench train: the training gradient on the device against the CPU reference (bench/train.cpp).
#pragma once

namespace ttt::bench {

int train(int argc, char** argv);

}  // namespace ttt::bench
