/*
 * routes_projects.h - handlers: projects, members, models and datasets (raw
 * bytes, never parsed here). Each answers through reply.h and returns 0;
 * authorization is done before (authz.c) from the route's row in table.c.
 */
#ifndef SBX_SERVER_ROUTES_PROJECTS_H
#define SBX_SERVER_ROUTES_PROJECTS_H

#include "req.h"

int sbx__h_projects_list(sbx__req *r);
int sbx__h_project_create(sbx__req *r);
int sbx__h_project_get(sbx__req *r);
int sbx__h_members_list(sbx__req *r);
int sbx__h_member_put(sbx__req *r);
int sbx__h_models_list(sbx__req *r);
int sbx__h_model_upload(sbx__req *r);
int sbx__h_model_get(sbx__req *r);
int sbx__h_model_content(sbx__req *r);
int sbx__h_model_delete(sbx__req *r);
int sbx__h_datasets_list(sbx__req *r);
int sbx__h_dataset_upload(sbx__req *r);
int sbx__h_dataset_get(sbx__req *r);
int sbx__h_dataset_content(sbx__req *r);
int sbx__h_dataset_delete(sbx__req *r);

#endif
