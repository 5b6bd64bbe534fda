"""Let evidently 0.7.23 import under pandas 3.

evidently's legacy test module imports `pandas.core.dtypes.common.infer_dtype_from_object`,
which pandas 3 removed. Only its column-type test (which this project does not use) calls it;
this restores the name with the behaviour it had (a dtype-like object to its scalar type).
"""

from __future__ import annotations

import numpy as np
import pandas.core.dtypes.common as _pandas_common

if not hasattr(_pandas_common, "infer_dtype_from_object"):
    def infer_dtype_from_object(dtype):
        return np.dtype(dtype).type

    _pandas_common.infer_dtype_from_object = infer_dtype_from_object
