"""Operations on one image and its predictions, the same in every port (``web_demo/src/*.js``, the
Android core): preprocessing, lung crop, ensemble combiners, heat maps (``cam``), input checks and the
referral band (``quality``)."""
