package state

// MaxPolicyClasses is how many classes the dataplane compiles a port's
// rules of one direction and ethertype into: the bits of an sg_mask
// (SG_MASK_WORDS * 64 in bpf/include/abi.h). Rules sharing a remote form
// one class, or rules sharing a protocol/port match, whichever gives
// fewer; with more than this many of both, the port's groups cannot be
// compiled and it passes only what is always allowed. The controller
// refuses changes that would get there.
const MaxPolicyClasses = 256
