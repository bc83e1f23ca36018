DROP TABLE crls;
DROP TABLE certificates;
DROP TABLE cas;
