//! MSTL + AutoETS (augurs): being written.
